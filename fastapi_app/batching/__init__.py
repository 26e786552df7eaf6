"""What every phase does to its batches alike: create them and queue their submission, update them, cancel them."""
