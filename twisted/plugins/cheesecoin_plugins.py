# twistd plugins for CheeseCoin: only ServiceMakers live here; the services
# themselves are built by cheesecoin.tracker_tap and cheesecoin.member_tap.
from twisted.application.service import ServiceMaker

cheesetracker = ServiceMaker(
    "CheeseCoin tracker",
    "cheesecoin.tracker_tap",
    "The CheeseCoin tracker: a rendezvous server where members find each other.",
    "cheesetracker",
)

cheesemember = ServiceMaker(
    "CheeseCoin member",
    "cheesecoin.member_tap",
    "A CheeseCoin member: a full node that keeps, mines and relays the cheese stack.",
    "cheesemember",
)
