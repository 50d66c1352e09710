*** Settings ***
Documentation       One chat message produces one agent run that keeps every rule of the dialect.
...                 Each rule has its own test, so a report names the broken one.
Resource            ../../resources/agent_chat.resource
Suite Setup         One Agent Run Is Collected
Test Tags           events    critical


*** Test Cases ***
Run Contains The Required Events
    Run Should Contain The Required Events    ${RUN}

Run Starts With Agent Started And Ends Once
    Run Should Start And End Once    ${RUN}

Agent Thinks Before Answering
    Run Should Contain Thinking    ${RUN}

Every Tool Call Completes
    Tool Calls Should Be Paired    ${RUN}

Every Event Carries The Run Thread And User Ids
    Run Events Should Carry Ids    ${RUN}

Run Meets Its Time Budgets
    Run Should Meet Time Budgets    ${RUN}

Every Event Matches Its Schema
    Run Events Should Match Schemas    ${RUN}

Run Conforms To The Protocol
    Run Should Conform To Protocol    ${RUN}

Tool Events Name The Tool
    ${calls}=    Get Tool Calls    ${RUN}
    FOR    ${call}    IN    @{calls}
        Should Match Regexp    ${call}[tool]    .+    msg=A tool call names no tool: ${call}
    END


*** Keywords ***
One Agent Run Is Collected
    [Documentation]    One user, one message, one collected run that every test of this suite checks.
    An Authenticated User Is Connected    flow-user
    ${run}=    User Sends A Chat Message    Which tools do you have?
    ${result}=    The Agent Run Is Collected    ${run}
    VAR    ${RUN}    ${result}    scope=SUITE
