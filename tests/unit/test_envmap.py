"""Every hyperkops / hyperopt-mongo-worker environment variable reaches the worker's settings."""

import json

import pytest
from click.testing import CliRunner

from hyperfleet.cli import worker
from hyperfleet.envmap import EnvMappingError, worker_args_from_env


def resolved_settings(env: dict, *args: str) -> dict:
    result = CliRunner().invoke(worker, [*args, "--print-settings"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# (variable suffix, value, settings field, expected value)
FLAG_TABLE = [
    ("EXP_KEY", "exp-9", "exp_key", "exp-9"),
    ("LAST_JOB_TIMEOUT", "30", "last_job_timeout_seconds", 30.0),
    ("MAX_CONSECUTIVE_FAILURES", "3", "max_consecutive_failures", 3),
    ("MAX_JOBS", "7", "max_jobs", 7),
    ("MAX_JOBS_IN_DB", "100", "max_jobs_in_db", 100),
    ("MONGO", "db-host:27018/trials", "mongo_url", "db-host:27018/trials"),
    ("POLL_INTERVAL", "0.5", "poll_interval_seconds", 0.5),
    ("RESERVE_TIMEOUT", "12", "reserve_timeout_seconds", 12.0),
    ("WORKDIR", "/tmp/hyperfleet-work", "workdir", "/tmp/hyperfleet-work"),
]


@pytest.mark.parametrize("prefix", ["HYPEROPT_", "HYPEROPT_ARG_"])
@pytest.mark.parametrize("suffix,value,field,expected", FLAG_TABLE)
def test_each_flag_maps_from_both_prefixes(prefix, suffix, value, field, expected):
    flag = "--" + suffix.lower().replace("_", "-")
    assert worker_args_from_env({prefix + suffix: value}) == [flag, value]
    assert resolved_settings({prefix + suffix: value})[field] == expected


@pytest.mark.parametrize("prefix", ["HYPEROPT_", "HYPEROPT_ARG_"])
def test_no_subprocesses_switch(prefix):
    assert worker_args_from_env({prefix + "NO_SUBPROCESSES": "true"}) == ["--no-subprocesses"]
    assert worker_args_from_env({prefix + "NO_SUBPROCESSES": ""}) == ["--no-subprocesses"]
    assert worker_args_from_env({prefix + "NO_SUBPROCESSES": "false"}) == []
    # the hyperkops switch beats hyperfleet's own variable, which asks for subprocesses
    env = {"HYPERFLEET_WORKER_USE_SUBPROCESSES": "1"}
    assert resolved_settings(env)["use_subprocesses"] is True
    assert resolved_settings({**env, prefix + "NO_SUBPROCESSES": "yes"})["use_subprocesses"] is False


def test_mongo_address_from_hyperkops_variables():
    env = {"MONGO_DB_ADDRESS": "mongo.svc", "MONGO_DB_PORT": "27018", "TRIALS_DB": "trials"}
    assert resolved_settings(env)["mongo_url"] == "mongodb://mongo.svc:27018/trials"
    # hyperkops' defaults fill what is missing
    assert resolved_settings({"MONGO_DB_ADDRESS": "m"})["mongo_url"] == "mongodb://m:27017/model_db"


def test_mongo_url_variable_wins_over_parts():
    env = {"MONGO_URL": "mongodb://u:s3cret@a:1/x", "MONGO_DB_ADDRESS": "ignored"}
    assert resolved_settings(env)["mongo_url"] == "mongodb://u:***@a:1/x"  # the password is never printed


def test_print_settings_never_shows_the_password():
    from hyperfleet.cli import monitor

    for command in (worker, monitor):
        result = CliRunner().invoke(command, ["--mongo", "mongodb://admin:pa%24%24w0rd@db:27017/t?authSource=admin",
                                              "--print-settings"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "pa%24%24w0rd" not in result.output and "mongodb://admin:***@db:27017/t" in result.output


def test_command_line_wins_over_environment():
    env = {"HYPEROPT_EXP_KEY": "from-env", "HYPEROPT_MAX_JOBS": "5", "MONGO_URL": "mongodb://env-host/db"}
    settings = resolved_settings(env, "--exp-key", "from-cli", "--mongo", "mongodb://cli-host/db")
    assert settings["exp_key"] == "from-cli"
    assert settings["mongo_url"] == "mongodb://cli-host/db"
    assert settings["max_jobs"] == 5


def test_hyperfleet_prefix_is_below_hyperkops_variables():
    env = {"HYPERFLEET_WORKER_EXP_KEY": "ours", "HYPERFLEET_WORKER_HEARTBEAT_SECONDS": "0.5"}
    assert resolved_settings(env)["exp_key"] == "ours"
    assert resolved_settings(env)["heartbeat_seconds"] == 0.5
    assert resolved_settings({**env, "HYPEROPT_EXP_KEY": "hyperkops"})["exp_key"] == "hyperkops"


def test_unknown_hyperopt_variable_is_an_error_naming_it():
    result = CliRunner().invoke(worker, ["--print-settings"], env={"HYPEROPT_MAX_JOBZ": "3"})
    assert result.exit_code == 2
    assert "HYPEROPT_MAX_JOBZ" in result.output
    with pytest.raises(EnvMappingError, match="HYPEROPT_ARG_COLOR"):
        worker_args_from_env({"HYPEROPT_ARG_COLOR": "red"})


def test_hyperopt_library_variables_are_not_flags():
    assert worker_args_from_env({"HYPEROPT_FMIN_SEED": "42"}) == []


@pytest.mark.parametrize(
    "env,named",
    [
        ({"HYPEROPT_NO_SUBPROCESSES": "maybe"}, "HYPEROPT_NO_SUBPROCESSES"),
        ({"MONGO_DB_PORT": "http"}, "MONGO_DB_PORT"),
        ({"HYPEROPT_MAX_JOBS": "lots"}, "--max-jobs"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_source(env, named):
    result = CliRunner().invoke(worker, ["--print-settings"], env=env)
    assert result.exit_code == 2
    assert named in result.output


@pytest.mark.parametrize("url", ["http://host/db", "mongodb://host:port/db", "mongodb://h/a/b/c", "mongodb://h/bad name"])
def test_malformed_mongo_url_is_a_usage_error(url):
    result = CliRunner().invoke(worker, ["--mongo", url, "--print-settings"])
    assert result.exit_code == 2
    assert "--mongo" in result.output
