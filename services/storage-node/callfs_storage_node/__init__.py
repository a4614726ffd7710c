"""CallFS storage-node role."""
