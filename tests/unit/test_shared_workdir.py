"""worker.SharedWorkdir: in-process objectives share the process's working directory, so threads that
want the same directory run in it together, one that wants another waits until they have all left,
and a directory the trial created is removed after it when asked."""

import os
import threading

from hyperfleet.worker import SharedWorkdir


def test_threads_share_one_directory_and_another_directory_waits(tmp_path):
    shared, a, b = SharedWorkdir(), str(tmp_path / "a"), str(tmp_path / "b")
    start = os.getcwd()
    inside_a, release_a, in_b = threading.Barrier(3), threading.Event(), threading.Event()
    seen = {}

    def in_a(name):
        with shared.inside(a):
            seen[name] = os.getcwd()
            inside_a.wait(10)  # both threads are inside a at once
            release_a.wait(10)

    def wants_b():
        with shared.inside(b):
            seen["b"] = os.getcwd()
            in_b.set()

    threads = [threading.Thread(target=in_a, args=(n,)) for n in ("a1", "a2")]
    for t in threads:
        t.start()
    inside_a.wait(10)
    other = threading.Thread(target=wants_b)
    other.start()
    assert not in_b.wait(0.3), "a thread entered b while others were in a"
    release_a.set()
    assert in_b.wait(10)
    for t in [*threads, other]:
        t.join(10)
    assert (seen["a1"], seen["a2"], seen["b"]) == (a, a, b)
    assert os.getcwd() == start


def test_a_directory_the_trial_created_is_removed_only_when_asked(tmp_path):
    shared = SharedWorkdir()
    kept, erased, existing = tmp_path / "kept", tmp_path / "erased", tmp_path / "existing"
    existing.mkdir()
    with shared.inside(str(kept)):
        (kept / "out.txt").write_text("x")
    with shared.inside(str(erased), erase_if_created=True):
        (erased / "out.txt").write_text("x")
    with shared.inside(str(existing), erase_if_created=True):
        pass
    assert kept.is_dir() and not erased.exists() and existing.is_dir()


def test_a_created_directory_the_trial_removed_itself_is_no_error(tmp_path):
    shared, path = SharedWorkdir(), str(tmp_path / "trial")
    start = os.getcwd()
    with shared.inside(path, erase_if_created=True):
        os.rmdir(path)  # an objective that cleans up after itself
    assert os.getcwd() == start and not os.path.exists(path)
