"""Local servers for development, not part of the product: the MongoDB wire-protocol server
(devserver/mongo.py: mongod from PATH, or FerretDB on PostgreSQL) that `make demo`, the examples, the
benchmarks and the tests start on a free loopback port, and what such servers share
(devserver/processes.py). `make mongo-server` installs the server."""
