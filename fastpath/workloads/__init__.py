"""Guest workloads of `exitlab bench` (assembled with KICKS, PORT and HC defined)."""
