"""npkit."""
