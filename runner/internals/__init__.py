"""Looking inside a network without editing its code: what its layers compute (feature maps, filters)."""
