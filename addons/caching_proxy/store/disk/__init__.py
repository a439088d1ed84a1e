"""The diskcache backend: a folder shared safely by every process on the machine.
"""
