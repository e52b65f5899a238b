"""Building blocks that know nothing of Lightning: networks, likelihoods, aux transforms."""
