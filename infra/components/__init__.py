"""Not part of the program: only what the state of stacks deployed before infra/docker and infra/kubernetes
existed names (see password.py)."""
