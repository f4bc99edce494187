"""medloop: closed-loop autonomous research for medical-imaging AI."""

__version__ = "0.1.0"
