"""Human-in-the-loop labeler for Rakuten France product categories."""
