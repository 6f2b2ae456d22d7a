"""Local stand-ins for the outside systems, for tests, benchmarks and the demo.

Everything here binds 127.0.0.1 only. Step images never include this package.
"""
