"""Operating TCP Fast Open on Linux: sysctl bits, keys and farm keys, counters, alerts, status.

Each function works on the network namespace of the calling thread; the command line enters
another one with ``--netns NAME`` (:func:`fastopen.kernel.netns.entered`).
"""
