"""Constants shared by vendo-ai-litellm's tests (a module of its own name: several test
directories' ``conftest`` modules cannot be imported by name in one pytest run)."""

SECRET_KEY = "ai-gateway-tests-master-secret-0123456789"
OPERATOR_KEY = "sk-operator-0123456789abcdef"

CATALOG = """
currency = "usd"

[features.ai_chat]
kind = "metered"
[features.ai_embeddings]
kind = "metered"
[features.semantic_search]
kind = "metered"
[features.ai_tokens]
kind = "metered"
unit = "token"
[features.ai_spend]
kind = "metered"
unit = "microdollar"

[ai]
aliases = { fast = "chat-small", smart = "chat-large" }

[plans.free]
name = "Free"
default = true
features = { ai_chat = 100, ai_embeddings = 100, semantic_search = 100, ai_tokens = 100000, ai_spend = 1000000 }
ai = { models = ["fast", "embed-small"], managed = false }

[plans.pro]
name = "Pro"
prices = [{ interval = "month", currency = "usd", amount = "20" }]
features = { ai_chat = "unlimited", ai_embeddings = "unlimited", semantic_search = 5, ai_tokens = "unlimited", ai_spend = "unlimited" }
ai = { models = ["fast", "smart", "embed-small"], managed = true }

[plans.capped]
name = "Capped"
prices = [{ interval = "month", currency = "usd", amount = "5" }]
features = { ai_chat = 3, ai_embeddings = 100, semantic_search = 100, ai_tokens = 200, ai_spend = 170 }
ai = { models = ["fast", "embed-small"], managed = true }
"""
