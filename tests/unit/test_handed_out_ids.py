"""store.HandedOutIds: the trial ids a reader has not seen yet are looked for HANDED_OUT_LOOKS reads, then given up."""

from hyperfleet.store import HANDED_OUT_LOOKS, HandedOutIds


def test_an_id_never_found_is_looked_for_exactly_handed_out_looks_times():
    ids = HandedOutIds()
    ids.note(10, known=lambda tid: False)  # the first note only sets where the counter was
    assert ids.lowest() is None
    ids.note(12, known=lambda tid: tid == 11)  # 10 and 11 handed out since; 11 already seen
    assert ids.lowest() == 10 and ids.looking_for(10) and not ids.looking_for(11)
    for _ in range(HANDED_OUT_LOOKS - 1):
        ids.looked(found=lambda tid: False)
        assert ids.looking_for(10)
    ids.looked(found=lambda tid: False)
    assert not ids.looking_for(10) and ids.lowest() is None


def test_an_id_found_is_no_longer_looked_for():
    ids = HandedOutIds()
    ids.note(0, known=lambda tid: False)
    ids.note(3, known=lambda tid: False)
    ids.looked(found=lambda tid: tid == 1)
    assert [t for t in range(3) if ids.looking_for(t)] == [0, 2]
    ids.prune(known=lambda tid: tid == 0)
    assert ids.lowest() == 2
    ids.reset(5)
    assert ids.lowest() is None
