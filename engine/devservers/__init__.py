"""Local servers for trying nurture and for its tests: a private Dovecot, a mail relay."""
