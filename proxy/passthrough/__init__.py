"""Every ``/v1/*`` route the proxy does not serve itself, passed to the upstream unchanged: route (HTTP only) →
serving (the user's replica, the upstream's answer relayed as it arrives)."""
