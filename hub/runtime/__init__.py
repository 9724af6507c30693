"""This hub instance: heartbeat, workers, scheduler, deliveries, processor."""
