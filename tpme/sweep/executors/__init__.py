"""Where cells run: the local executor (subprocesses here), Ray (tasks on a cluster), and in-process
(tests and debugging). The driver asks each the same four things (`base.Executor`)."""
