"""The Centrifuge client protocol's Protobuf messages, generated from client.proto."""
