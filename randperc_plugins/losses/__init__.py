"""Framework-free losses: import torch only."""
