"""The reference applications built only on Syncline's public parts: auth, chat, orders."""
