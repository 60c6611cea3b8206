//! Typed indices into a plan's lists. A `GatewayId` indexes `Plan::gateways` and nothing
//! else: passing a service's index where a gateway's is wanted does not compile.

use std::fmt;
use std::ops::Index;

use super::{Check, Endpoint, Gateway, Region, Service, Target, Zone};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident indexes $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);

        impl $name {
            pub fn index(self) -> usize {
                self.0
            }

            /// The ids of a list of `n` items, in order.
            pub fn all(n: usize) -> impl Iterator<Item = $name> + Clone {
                (0..n).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Index<$name> for [$item] {
            type Output = $item;
            fn index(&self, i: $name) -> &$item {
                &self[i.0]
            }
        }

        impl Index<$name> for Vec<$item> {
            type Output = $item;
            fn index(&self, i: $name) -> &$item {
                &self[i.0]
            }
        }
    };
}

id!(
    /// Index into `Plan::zones`.
    ZoneId indexes Zone
);
id!(
    /// Index into `Plan::regions`.
    RegionId indexes Region
);
id!(
    /// Index into `Plan::gateways`.
    GatewayId indexes Gateway
);
id!(
    /// Index into `Plan::checks`.
    CheckId indexes Check
);
id!(
    /// Index into `Plan::services`.
    ServiceId indexes Service
);
id!(
    /// Index into `Plan::targets`.
    TargetId indexes Target
);
id!(
    /// Index into one service's `Service::endpoints` (and the tables built from them).
    EndpointId indexes Endpoint
);
