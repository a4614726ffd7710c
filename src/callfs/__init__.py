"""CallFS: a Kubernetes-native REST API filesystem."""

__version__ = "0.1.0"
