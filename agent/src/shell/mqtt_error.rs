//! How an error of the MQTT client counts for the link: a packet it could
//! not take, the broker closing the connection, or anything else. One
//! reading for the agent's driver and the simulator's fleet devices, so
//! that the fleet measures the agent's own herd control.

use rumqttc::mqttbytes::Error as MqttBytesError;
use rumqttc::{ConnectionError, StateError};

use crate::core::backoff::LossOrigin;

/// The kinds of MQTT client errors the link tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttError {
    /// A packet the client could not take (too large, malformed).
    Undecodable,
    /// The socket ended without a word from the broker (end of stream,
    /// reset, broken pipe): how MQTT 3.1.1 brokers close a connection.
    ClosedByBroker,
    /// Anything else (timeouts, TLS alerts, unreachable networks).
    Other,
}

impl MqttError {
    /// The kind of `error`.
    pub fn of(error: &ConnectionError) -> MqttError {
        match error {
            // rumqttc reports a failed socket read as a decoding error
            // wrapping the I/O error: a reset, or a TLS stream that ended
            // without close_notify (a broker process killed), is the broker
            // going away, not a packet the client could not take.
            ConnectionError::MqttState(StateError::Deserialization(MqttBytesError::Io(e))) => {
                MqttError::of_io(e)
            }
            ConnectionError::MqttState(StateError::Deserialization(_)) => MqttError::Undecodable,
            ConnectionError::MqttState(StateError::ConnectionAborted) => MqttError::ClosedByBroker,
            ConnectionError::Io(e) | ConnectionError::MqttState(StateError::Io(e)) => {
                MqttError::of_io(e)
            }
            _ => MqttError::Other,
        }
    }

    fn of_io(error: &std::io::Error) -> MqttError {
        use std::io::ErrorKind as Io;
        match error.kind() {
            Io::ConnectionReset | Io::UnexpectedEof | Io::BrokenPipe | Io::ConnectionAborted => {
                MqttError::ClosedByBroker
            }
            _ => MqttError::Other,
        }
    }

    /// Which side ended an established connection that failed this way.
    pub fn loss_origin(self) -> LossOrigin {
        match self {
            MqttError::ClosedByBroker => LossOrigin::Broker,
            MqttError::Undecodable | MqttError::Other => LossOrigin::Device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_stream_is_the_broker_and_a_timeout_is_not() {
        let eof = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(MqttError::of(&eof).loss_origin(), LossOrigin::Broker);
        let aborted = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert_eq!(MqttError::of(&aborted), MqttError::ClosedByBroker);
        let silent = ConnectionError::MqttState(StateError::AwaitPingResp);
        assert_eq!(MqttError::of(&silent).loss_origin(), LossOrigin::Device);
        assert_eq!(
            MqttError::of(&ConnectionError::NetworkTimeout),
            MqttError::Other
        );
    }

    #[test]
    fn a_read_that_failed_is_not_a_poison_message_but_a_bad_packet_is() {
        let killed = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        );
        let read_failed =
            ConnectionError::MqttState(StateError::Deserialization(MqttBytesError::Io(killed)));
        assert_eq!(MqttError::of(&read_failed), MqttError::ClosedByBroker);
        let too_big = ConnectionError::MqttState(StateError::Deserialization(
            MqttBytesError::PayloadSizeLimitExceeded(1 << 20),
        ));
        assert_eq!(MqttError::of(&too_big), MqttError::Undecodable);
    }
}
