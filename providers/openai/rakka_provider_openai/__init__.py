"""OpenAI and Azure OpenAI providers for rakka-runtime (an ordinary entry-point plugin)."""
