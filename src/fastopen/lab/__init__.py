"""The lab: network namespaces the project creates, links between them, benchmarks."""
