"""Building blocks shared by the plugin models: content encoder, training interactions, warm backbone."""
