# The Pulumi program is the package infra (the repository root is on the path): its folders docker/ and
# kubernetes/ are infra.docker and infra.kubernetes, never the client libraries of those names.
