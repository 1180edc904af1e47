"""The `cxr` command line: a shell over the core library `cxr` and the pipeline package (it may import kfp;
the core never does)."""
