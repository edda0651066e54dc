"""Tests for the Image Builder + Inspector2 emulator, driven through the real boto3 clients."""
