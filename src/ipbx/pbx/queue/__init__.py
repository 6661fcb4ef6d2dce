"""Call queues (ACD): callers wait in line and are answered by the next suitable agent."""
