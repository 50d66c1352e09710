*** Settings ***
Resource    ../../resources/agent_chat.resource

*** Test Cases ***
Backend Is Healthy
    The Backend Should Be Healthy

A User Chats
    An Authenticated User Is Connected    alice
    ${result}=    User Chats And The Agent Answers Correctly
    Connection Should Not Receive Foreign Events    alice

Expired Token Is Refused
    ${t}=    Create Expired Token    mallory
    Handshake Should Be Refused    ${t}
