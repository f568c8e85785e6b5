"""vsm-console node runtime (never imports textual or asyncio).

from node import NodeConfig, open_node
"""

from node.config import NodeConfig, load_config
from node.core.events import Channel, Event
from node.delivery import Subscription
from node.node import Node, open_node

__all__ = ["Channel", "Event", "Node", "NodeConfig", "Subscription", "load_config", "open_node"]
