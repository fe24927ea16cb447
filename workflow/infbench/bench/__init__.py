"""One benchmark cell: measuring processes, their repetitions, the cell's result."""
