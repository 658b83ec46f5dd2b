"""The Docker target: ``target.py``'s DockerTarget, with Mongo, WorkerPool, Monitor and one Experiment per
experiment as its children (one module each), on one or several Docker hosts."""
