// The device agent SDK: enrollment, a durable queue of readings, delivery over mutual TLS.
export {}
