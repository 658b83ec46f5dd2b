"""docs/stack-config.md is made from infra/config.py (infra/stack_config_doc.py): it fails here when
it is stale, and every key of the models has a description."""

from infra import config, stack_config_doc


def test_docs_stack_config_md_is_what_the_models_make():
    assert stack_config_doc.DOC.read_text() == stack_config_doc.render(), \
        "docs/stack-config.md is stale: run make docs"


def test_every_key_is_described():
    undescribed = [f"{model.__name__}.{name}" for model in config._Model.__subclasses__()
                   for name, field in model.model_fields.items() if not field.description]
    assert not undescribed, "give these fields a docstring: " + ", ".join(undescribed)


def test_every_top_level_key_and_secret_has_a_section():
    text = stack_config_doc.render()
    for key in (*config.KEYS, *config.SECRET_KEYS):
        assert f"\n## hyperfleet:{key}\n" in text, key
