"""Where and how things run: device and dtype, processes, the model source and its cache, atomic writes,
the package's errors and its one reporter. Imports nothing above it.
"""
