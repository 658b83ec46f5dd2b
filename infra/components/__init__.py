"""One ComponentResource per module: Mongo, WorkerPool, Monitor, Experiment (the driver), and the
generated Mongo password. They create Docker resources; the Kubernetes targets deploy the Helm chart."""
