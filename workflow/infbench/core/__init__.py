"""What every layer shares: the cell, precisions, files written atomically, damaged inputs, the run's lock."""
