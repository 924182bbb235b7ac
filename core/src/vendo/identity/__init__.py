"""Identity: users, workspaces, roles, invitations, sessions, the audit log and GDPR.

Kernel services reached through the kernel: ``kernel.identity`` (users, workspaces,
members, invitations, export and erasure), ``kernel.sessions`` (access and refresh tokens)
and ``kernel.audit`` (the append-only audit log). Credentials (passwords, API keys, OIDC
links) belong to auth plugins, which create users through ``kernel.identity``.
"""
