"""Private language-model endpoints: the chat client and its circuit breaker."""
