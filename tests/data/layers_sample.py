from settlement.cli import register  # a sample for tests/test_layers.py: must be found
import hub.status
