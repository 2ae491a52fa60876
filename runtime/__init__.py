"""Runtime: loads a compiled model (JIT or shared library), checks inputs, runs it."""
