//! What a step hands on when it forwards an event: the event, and for a
//! remote step the response headers whose pass-through part travels on.

use cloudevents::Event;
use http::HeaderMap;

/// What a step hands on when it forwards an event.
#[derive(Debug)]
pub struct Forward {
    /// The step's output event.
    pub event: Event,
    /// A remote step's response headers: their pass-through headers travel
    /// on to the next hops instead of the inbound request's, as Knative
    /// forwards a subscriber's reply. `None` for a Wasm step.
    pub response: Option<HeaderMap>,
}
