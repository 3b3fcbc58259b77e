"""Looking inside a network without editing its code: what its layers compute (feature maps, filters) and its
attention (capture, intervention); see :mod:`.features` and :mod:`.attention`."""
