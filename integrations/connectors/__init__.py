"""Connectors: one class per provider, each with a pull half and a push half producing the same
canonical events (`customers.history.canonical`)."""

from integrations.connectors.base import Connector, SignatureError, connector_for, register
from integrations.connectors.generic import GenericConnector
from integrations.connectors.hubspot import HubSpotConnector
from integrations.connectors.segment import SegmentConnector
from integrations.connectors.stripe import StripeConnector
from integrations.connectors.zendesk import ZendeskConnector

for _cls in (StripeConnector, HubSpotConnector, ZendeskConnector, SegmentConnector, GenericConnector):
    register(_cls)

__all__ = ["Connector", "SignatureError", "connector_for"]
