"""Adapters: the only modules that touch subprocess, the Docker engine, git or RPM files.

Third-party exceptions are translated into xcpbuild.errors here.
"""
