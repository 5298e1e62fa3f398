"""Adapters that let other tools use routerforge's routing decision (LiteLLM proxy: ``litellm_hook``)."""
