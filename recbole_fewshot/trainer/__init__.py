"""Trainers of plugin models that need one, found by RecBole as ``recbole.trainer.<Model>Trainer``."""
