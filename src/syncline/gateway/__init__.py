"""The WebSocket gateway: Centrifuge client protocol sessions, subscriptions, fan-out."""
