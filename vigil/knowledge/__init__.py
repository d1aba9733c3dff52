"""Knowledge base: runbooks and resolved incidents in Qdrant, retrieved by hybrid (dense + sparse) search.

Import from the submodules (`vigil.knowledge.base`, `.models`, `.query`): this package module stays empty so that
importing the models (for example inside a Temporal workflow sandbox) never pulls in Qdrant or torch.
"""
