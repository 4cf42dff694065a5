"""rakka-runtime: OpenAI / Azure OpenAI chat completions through config-driven policies."""
